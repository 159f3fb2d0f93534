"""(d) raw aiohttp (64 connections), no validation: the floor."""

from ._aiohttp_raw import factory
from ._harness import run_async

if __name__ == "__main__":
    run_async("aiohttp_raw", factory(validate=False))
