"""One module per `reconciler` subcommand; each exposes `register(subparsers)`."""
