"""Application code above the library: the demo pipeline, design-space exploration, the report page.

It composes models, compiler, sim and hw; the CLI (`metahw.cli`) drives it. Nothing below
imports it.
"""
