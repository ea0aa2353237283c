from ragops_gateway.app import main

main()
