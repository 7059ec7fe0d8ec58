"""Load benchmark of frontauth and its peers; run it with ``make bench`` or ``python -m bench``."""
