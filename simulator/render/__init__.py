"""Renderers: pictures drawn from recorded arrays; they never simulate."""
