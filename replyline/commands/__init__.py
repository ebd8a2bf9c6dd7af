"""One module per `replyline` subcommand, each exposing ``add_parser(subparsers)`` and ``run(args)``."""
