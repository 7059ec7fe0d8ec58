import sys

from frontauth.cli import main

sys.exit(main())
