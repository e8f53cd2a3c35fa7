"""`python -m eval.grounding`: precision and recall of the answer verifier's "unsupported"."""

from eval.grounding.measure import main

main()
