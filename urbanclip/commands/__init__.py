"""One module per CLI subcommand (see urbanclip/cli.py for the contract)."""
