from textclass.cli import main

main()
