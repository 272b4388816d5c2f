"""Retention: the sweeper that removes what is past its time, never what is still needed."""
