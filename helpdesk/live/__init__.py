"""Live updates for the console: small events published after a commit, and who is looking at
which conversation.

With `REDIS_URL` set, events go out on a Redis pub/sub channel per brand (the console streams them
as server-sent events) and presence lives in Redis keys that expire. On the embedded default the
same events are rows of `live_events`, written in the transaction that caused them, which the
console polls with a cursor; presence is a row per agent and conversation with an expiry time.
"""
