"""The IFD dataflow (``flows.ifd``) and its bytewax-free domain steps."""
