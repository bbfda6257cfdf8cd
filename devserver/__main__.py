from devserver.stack import main

main()
