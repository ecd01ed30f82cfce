"""Run the CPU demo: ``python tools/demo.py`` (``make demo``). See mmbcn/commands/demo.py."""

from mmbcn.commands.demo import main

if __name__ == '__main__':
    main()
