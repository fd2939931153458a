"""deeplab-pytorch's learning-rate schedule as an mmengine parameter scheduler."""
from __future__ import annotations

from mmengine.optim.scheduler.lr_scheduler import LRSchedulerMixin
from mmengine.optim.scheduler.param_scheduler import INF, _ParamScheduler
from mmseg.registry import PARAM_SCHEDULERS


class StepwisePolyParamScheduler(_ParamScheduler):
    """value = base * (1 - s / (end - begin)) ** power with s = the step count rounded down to a multiple of
    ``step_size``: deeplab-pytorch's ``PolynomialLR(step_size=LR_DECAY=10, iter_max, power)``, which updates the lr
    only every 10 iterations and decays towards 0 at ``iter_max`` (mmengine's PolyLR updates every step and reaches
    its minimum one step early). ``step_size=1`` gives the plain poly schedule."""

    def __init__(self, optimizer, param_name: str, power: float = 0.9, step_size: int = 1, begin: int = 0,
                 end: int = INF, last_step: int = -1, by_epoch: bool = False, verbose: bool = False):
        if step_size < 1:
            raise ValueError(f"step_size must be >= 1, got {step_size}")
        if end == INF:
            raise ValueError("StepwisePolyParamScheduler needs a finite end (the total number of iterations)")
        self.power = float(power)
        self.step_size = int(step_size)
        self.total = end - begin
        super().__init__(optimizer, param_name=param_name, begin=begin, end=end, last_step=last_step,
                         by_epoch=by_epoch, verbose=verbose)

    def _get_value(self):
        s = self.last_step - self.last_step % self.step_size
        factor = max(0.0, 1.0 - s / self.total) ** self.power
        return [base * factor for base in self.base_values]


@PARAM_SCHEDULERS.register_module()
class StepwisePolyLR(LRSchedulerMixin, StepwisePolyParamScheduler):
    """Learning-rate version of :class:`StepwisePolyParamScheduler`."""
