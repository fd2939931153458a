"""Import this module to register the stage's modules in the mmseg/mmengine registries (config ``custom_imports``)."""
from segment import datasets, models, schedules, transforms  # noqa: F401  (imported for their registration side effect)
