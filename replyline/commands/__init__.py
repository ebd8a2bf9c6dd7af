"""One module per `replyline` subcommand, each exposing ``add_parser(subparsers)`` (which
registers it with ``_parser.subcommand``) and ``run(args)``."""
