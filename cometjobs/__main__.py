from cometjobs.cli import main

main()
