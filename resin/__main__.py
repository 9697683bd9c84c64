import sys

from resin.cli import main

sys.exit(main())
