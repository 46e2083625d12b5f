"""The layer below `eligibility` and `ledgers`: value types and errors every layer uses.

    errors       the root error, positioned problems and the registry of error codes
    money        fen and yuan: parsing amounts people write, formatting amounts people read
    periods      benefit periods (their ledger keys and bounds) and assessed windows
    identifiers  the national identifiers: resident identity numbers (GB 11643) and
                 unified social credit codes (GB 32100), their check characters
    yamlsrc      the strict YAML loader for files people write, with positions
    workdays     working days on the official calendar: objection deadlines (stdlib only)
    holidays     the working-day calendar file, policies/holidays.yaml, read and checked

Nothing here imports `disburse`, `jobs`, `eligibility` or `ledgers` (tests/unit/test_layers.py).
"""
