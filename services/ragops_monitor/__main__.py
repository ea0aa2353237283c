from ragops_monitor.app import main

main()
