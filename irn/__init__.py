"""Stage 3: IRN refinement of the BAS seeds into pseudo masks (Ahn et al., CVPR 2019; BAS-Extension's settings).

Steps (one CLI each): ``make_ir_labels`` (dense-CRF inter-pixel relation labels from the seeds), ``train`` (the
inter-pixel relation network: class-boundary and displacement branches on a frozen backbone), ``make_pseudo_masks``
(boundary map -> random walk of the seed maps -> label maps). Library modules: ``ir_labels``, ``data``, ``model``,
``losses``, ``path_index``, ``random_walk``.
"""
