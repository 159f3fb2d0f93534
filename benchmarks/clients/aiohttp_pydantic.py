"""(c) raw aiohttp (64 connections) + pydantic validation: the speed reference."""

from ._aiohttp_raw import factory
from ._harness import run_async

if __name__ == "__main__":
    run_async("aiohttp_pydantic", factory(validate=True))
