from kpictl.cli.app import main

main()
