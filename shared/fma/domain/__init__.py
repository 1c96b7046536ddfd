"""Pure domain code: entities, state machines, codec and strategies.

Nothing here imports boto3 or pynamodb; modules that the API handler needs stay free of numpy
so that its cold start stays small.
"""
