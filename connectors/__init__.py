"""Sources: DBN file replay (and, later, Databento live) feeding the IFD dataflow."""
