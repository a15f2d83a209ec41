"""Reference solutions of the tutorials' exercises, one module per tutorial (``t01`` … ``t11``).

Try the exercise in the notebook first: each function here has the name of the stub it solves.
"""
