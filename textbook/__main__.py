from textbook.cli import main

main()
