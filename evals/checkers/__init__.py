"""Rule checkers of the mini-world families.

A checker reads only the pixels of a video and the task's hidden ground truth,
and shares no code with the differentiable reward checks in `reasoner/`, so an
optimizer tuned against those checks cannot flatter its own judge.
"""
