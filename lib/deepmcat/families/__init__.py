"""Phantom families beside the project's own generator (:mod:`deepmcat.phantoms`, the "classic" family),
each written independently of it, so that defaults chosen on one family can be reported on another."""

#: every family ``deepmcat generate --family`` writes
FAMILIES = ("classic", "torso", "blob", "contour", "shell", "spheroid")
