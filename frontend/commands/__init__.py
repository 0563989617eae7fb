"""One module per `dozen` subcommand; each defines `register(subparsers, common)`."""
