"""Tests of the segments plugin (plugins/segments, docs/segments.md)."""
