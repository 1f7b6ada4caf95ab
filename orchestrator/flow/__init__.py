"""③ Flow control that holds events back (debounce, batch, throttle, rate_limit): the engine side.

    maths.py     pure: GCRA, the rate-limit window, debounce and batch due times (the Lua scripts mirror it)
    decide.py    at plan time, one memoised decide script per (rule, event): start now, held, merged, dropped
    release.py   the chore that releases due holds onto the results stream, and the runs the engine makes of them

The rule side (what a rule declares, validation) is rules/flow_model.py; the engine's hooks engine/flow.py.
"""
