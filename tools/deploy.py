"""Deploy a trained BCN+WS model: ``python tools/deploy.py CONFIG CHECKPOINT --out deployed.pth
[--onnx model.onnx]`` (see mmbcn/commands/deploy.py)."""

from mmbcn.commands.deploy import main

if __name__ == '__main__':
    main()
