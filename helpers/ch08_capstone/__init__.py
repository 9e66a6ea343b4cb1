"""Chapter 8, the capstone: the optimization waterfall, the decision guide, the class report, charts, exercises."""
