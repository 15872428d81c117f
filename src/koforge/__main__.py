from koforge.cli.main import main

main()
