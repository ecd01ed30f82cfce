"""``python -m mmbcn.checkpoints convert IN OUT``: see :func:`mmbcn.checkpoints.convert`."""

from .weights_only import main

if __name__ == '__main__':
    main()
