"""The command: `python pipelines/stripe_pipeline.py [--destination NAME] [SUBCOMMAND ...]`.

The same as the installed `stripe-pipeline`; `--help` lists the subcommands and options.
"""

import sys

from stripe_promotions_pipeline.launch import main

if __name__ == "__main__":
    sys.exit(main())
