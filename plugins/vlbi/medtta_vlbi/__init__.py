"""medtta-bench-vlbi: black-hole imaging from VLBI closure quantities, registered with medtta-bench through its
entry points (problem `blackhole`, dataset `synthetic-eht`, prior `eht-rings-64`); see plugins/vlbi/README.md."""
