"""Command-line commands that live in their own modules (see cli._COMMANDS).

Each module has ``add_arguments(parser)`` and ``run(args) -> int`` and imports torch only
inside ``run``, so that ``rnnkit --help`` stays fast.
"""
