from textclass.cli.entry import main

main()
