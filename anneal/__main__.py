import sys

from anneal.cli import main

sys.exit(main())
