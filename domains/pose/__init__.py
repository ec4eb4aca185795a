"""Rigid point-cloud registration: find the pose that maps a source cloud onto a (partial) target cloud."""
