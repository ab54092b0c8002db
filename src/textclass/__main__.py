from textclass.entry import main

main()
