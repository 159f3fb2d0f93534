"""(g) our blocking SyncClient, one call at a time."""

from ._harness import run_blocking
from ._sdk import open_blocking

if __name__ == "__main__":
    run_blocking("sdk_blocking", open_blocking)
