"""Memoize pure helpers that moto recomputes on every request.

Introduced with the embedded backend (notebook 01). Profiling the embedded server on an
SQS send/receive/delete loop showed about a third of its time in
``camelcase_to_underscores`` (re-run for every queue attribute of every request) and in
``method_names_from_class`` (an ``inspect.getmembers`` scan per request). Both are pure
functions of a hashable argument, so caching them changes no behaviour.

Modules import these functions by name, so rebinding the module attribute would miss
them; instead the original function object's code is swapped for a call into a cache.
"""

from __future__ import annotations

import functools
import types

_applied = False


def _memoize_in_place(function: types.FunctionType, copy_result=lambda value: value) -> None:
    original = types.FunctionType(function.__code__, function.__globals__, function.__name__,
                                  function.__defaults__, function.__closure__)
    cached = functools.lru_cache(maxsize=4096)(original)
    helper_name = f"_cloudlab_cached_{function.__name__}"
    function.__globals__[helper_name] = lambda argument: copy_result(cached(argument))
    parameter = function.__code__.co_varnames[0]
    namespace: dict = {}
    exec(f"def trampoline({parameter}):\n    return {helper_name}({parameter})\n", {}, namespace)
    function.__code__ = namespace["trampoline"].__code__


def apply() -> None:
    """Install the caches once per process."""
    global _applied
    if _applied:
        return
    from moto.core import utils

    _memoize_in_place(utils.camelcase_to_underscores)
    _memoize_in_place(utils.method_names_from_class, copy_result=list)
    _applied = True
