"""Stage 1 of the pipeline: BAS seed training (model, losses, data, train) and seed export."""
