"""``python -m mmbcn.checkpoints convert IN OUT``: see :func:`mmbcn.checkpoints.convert`."""

from .weights_only import main

main()
