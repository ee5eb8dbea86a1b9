from tests.benchmarks.neighbours.run import main

raise SystemExit(main())
