"""Graded exercises of the tutorials: the checks (``checks``) and reference solutions (``solutions``).

A notebook imports the checks from its own folder (``from exercises import checks``); the test suite
(tests/test_exercises.py) runs every check against the reference solution (it must pass) and against
the untouched stub cell of the notebook (it must fail).
"""
