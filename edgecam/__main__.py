from edgecam.cli import main

main()
