"""`python -m llminfra_lab`: the same as the `llminfra-lab` command (`llminfra_lab.cli`)."""
import sys

from llminfra_lab.cli import main

sys.exit(main())
