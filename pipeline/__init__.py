"""The base under every stage (errors, dead letters, rewind, idle, pause, the stage runtime).

Every other package may import it; it imports none of them.
"""
