"""Make the checkout importable as ansible_collections.hashslot.redis for every test."""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(REPO, '.collections')


def _ensure_collection_link() -> None:
    link = os.path.join(COLLECTIONS, 'ansible_collections', 'hashslot', 'redis')
    if not os.path.islink(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(os.path.join('..', '..', '..'), link)


_ensure_collection_link()
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)
