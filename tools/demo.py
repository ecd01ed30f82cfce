"""Run the CPU demo: ``python tools/demo.py`` (``make demo``). See mmbcn/runner/demo.py."""

from mmbcn.runner.demo import main

if __name__ == '__main__':
    main()
